# predict: class ids and confidence per grid tile, and a VRT mosaic over all tiles. A tile is read with a halo
# from its staged neighbours, so that tile edges are predicted like interiors (and a restaged tile re-predicts
# its neighbours too).


rule predict_tile:
    input:
        weights=f"{BUNDLE}/weights.pt",
        card=f"{BUNDLE}/bundle.json",
        image=f"{RESULTS}/stage/{{tile}}.tif",
        neighbours=stage_neighbours,
    output:
        classes=f"{RESULTS}/predict/{{tile}}.tif",
        confidence=f"{RESULTS}/predict/{{tile}}.conf.tif",
        **({"top2": f"{RESULTS}/predict/{{tile}}.top2.tif"} if CONFIG.predict.top2 else {}),
    params:
        settings=settings("predict"),
        bundle=input_folder("card"),
        neighbours=lambda wildcards, input: ",".join(input.neighbours),
        legend=CONFIG.labels.legend if CONFIG.labels.path else "",  # no labels: nothing to compare with
        top2=lambda wildcards, output: f"--top2 {output.top2}" if CONFIG.predict.top2 else "",
    log:
        f"{LOGS}/predict/{{tile}}.log",
    benchmark:
        f"{BENCHMARKS}/predict/{{tile}}.tsv"
    conda:
        "../envs/runtime.yml"
    threads: 2
    resources:
        mem_mb=8000,
        runtime=60,
        gpu=1,
        tasks_per_gpu=0,
    shell:
        "s2ecosg predict --settings {params.settings} --bundle {params.bundle} --image {input.image}"
        " --classes {output.classes} --confidence {output.confidence} --neighbours '{params.neighbours}'"
        " --legend '{params.legend}' {params.top2} --log {log}"


rule mosaic:
    input:
        per_tile(f"{RESULTS}/predict/{{tile}}.tif"),
    output:
        f"{RESULTS}/predict/mosaic.vrt",
    log:
        f"{LOGS}/predict/mosaic.log",
    benchmark:
        f"{BENCHMARKS}/predict/mosaic.tsv"
    conda:
        "../envs/runtime.yml"
    shell:
        "s2ecosg mosaic {input} --out {output} --log {log}"

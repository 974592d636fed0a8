# predict: class ids and confidence per grid tile, one job per block of tiles (one model build), and a VRT mosaic
# over all tiles. A tile is read with a halo from its staged neighbours, also across block edges, so that tile edges
# are predicted like interiors (and a restaged tile re-predicts its neighbours too).


rule predict_block:
    input:
        weights=f"{BUNDLE}/weights.pt",
        card=f"{BUNDLE}/bundle.json",
        stage=predict_stage_manifests,
    output:
        manifest=f"{RESULTS}/predict/blocks/{{block}}.json",
    params:
        settings=settings("predict", "grid"),
        bundle=input_folder("card"),
        folder=block_stage_folder("manifest"),
        legend=CONFIG.labels.legend if CONFIG.labels.path else "",  # no labels: nothing to compare with
    log:
        f"{LOGS}/predict/{{block}}.log",
    benchmark:
        f"{BENCHMARKS}/predict/{{block}}.tsv"
    conda:
        "../envs/runtime.yml"
    threads: 2
    resources:
        mem_mb=8000,  # ≈ 2 GB for 5 × 5 tiles of 10 km: rows read 1 024 at a time, memory follows the block width
        runtime=block_runtime(10, 3),
        gpu=1,
        tasks_per_gpu=0,
    shell:
        "s2ecosg predict --settings {params.settings} --bundle {params.bundle} --folder {params.folder}"
        " --manifest {output.manifest} --legend '{params.legend}' --log {log} {input.stage}"


rule mosaic:
    input:
        per_block(f"{RESULTS}/predict/blocks/{{block}}.json"),
    output:
        f"{RESULTS}/predict/mosaic.vrt",
    log:
        f"{LOGS}/predict/mosaic.log",
    benchmark:
        f"{BENCHMARKS}/predict/mosaic.tsv"
    conda:
        "../envs/runtime.yml"
    shell:
        "s2ecosg mosaic --out {output} --log {log} {input}"

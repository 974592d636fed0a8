# evaluate: agreement with the reference labels on the validation blocks (whole area in predict-only runs), and
# with evaluate.ecosg the original ECOSG scored on the same pixels at CLC levels 1 and 2.


rule evaluate:
    input:
        classes=per_tile(f"{RESULTS}/predict/{{tile}}.tif"),
        labels=per_tile(f"{RESULTS}/labels/{{tile}}.tif"),
        images=per_tile(f"{RESULTS}/stage/{{tile}}.tif"),
        card=f"{BUNDLE}/bundle.json",
        split=[] if PREDICT_ONLY else f"{RESULTS}/shards/split.geojson",
        ecosg=ecosg_reference_files(),
    output:
        metrics=f"{RESULTS}/evaluate/metrics.json",
        report=f"{RESULTS}/evaluate/metrics.md",
        picture=f"{RESULTS}/evaluate/panels.png",
    params:
        tiles=joined_tiles,
        bundle=input_folder("card"),
        predict_dir=input_folder("classes"),
        labels_dir=input_folder("labels"),
        stage_dir=input_folder("images"),
        out=output_folder("metrics"),
        split=lambda wildcards, input: f"--split {input.split}" if input.split else "",
        settings=settings("evaluate"),
    log:
        f"{LOGS}/evaluate.log",
    benchmark:
        f"{BENCHMARKS}/evaluate.tsv"
    conda:
        "../envs/runtime.yml"
    resources:
        mem_mb=8000,
        runtime=30,
    shell:
        "s2ecosg evaluate --bundle {params.bundle} --predict-dir {params.predict_dir} --labels-dir {params.labels_dir}"
        " --stage-dir {params.stage_dir} --tiles {params.tiles} {params.split} --out {params.out}"
        " --settings {params.settings} --log {log}"

# evaluate: agreement with the reference labels on the validation blocks (whole area in predict-only runs), and
# with evaluate.ecosg the original ECOSG scored on the same pixels at CLC levels 1 and 2; with evaluate.baseline a
# per-pixel LightGBM baseline (same bands, same split) trained and scored beside the CNN.


rule evaluate:
    input:
        classes=per_block(f"{RESULTS}/predict/blocks/{{block}}.json"),
        labels=per_block(f"{RESULTS}/labels/blocks/{{block}}.json"),
        images=per_block(f"{RESULTS}/stage/blocks/{{block}}.json"),
        card=f"{BUNDLE}/bundle.json",
        split=[] if PREDICT_ONLY else f"{RESULTS}/shards/split.geojson",
        ecosg=ecosg_reference_files(),
        points=[CONFIG.evaluate.points] if CONFIG.evaluate.points else [],
        baseline=per_tile(f"{RESULTS}/baseline/{{tile}}.tif") if BASELINE else [],
    output:
        metrics=f"{RESULTS}/evaluate/metrics.json",
        report=f"{RESULTS}/evaluate/metrics.md",
        html=report(f"{RESULTS}/evaluate/metrics.html", caption="../report/metrics.rst", category="Evaluation"),
        picture=report(f"{RESULTS}/evaluate/panels.png", caption="../report/panels.rst", category="Evaluation"),
    params:
        tiles=joined_tiles,
        bundle=input_folder("card"),
        predict_dir=f"{RESULTS}/predict",
        labels_dir=f"{RESULTS}/labels",
        stage_dir=f"{RESULTS}/stage",
        out=output_folder("metrics"),
        split=lambda wildcards, input: f"--split {input.split}" if input.split else "",
        settings=settings("evaluate", "labels"),
        baseline=lambda wildcards, input: f"--baseline-dir {os.path.dirname(input.baseline[0])}" if input.baseline else "",
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
        " --stage-dir {params.stage_dir} --tiles {params.tiles} {params.split} --out {params.out} {params.baseline}"
        " --settings {params.settings} --log {log}"


if BASELINE:

    rule baseline_train:
        input:
            **rules.shards_index.output,
        output:
            model=f"{RESULTS}/baseline/model.txt",
            card=f"{RESULTS}/baseline/card.json",
        params:
            settings=settings("evaluate", "train"),
            shards=input_folder("stats"),
            out=output_folder("card"),
        log:
            f"{LOGS}/baseline/train.log",
        benchmark:
            f"{BENCHMARKS}/baseline/train.tsv"
        conda:
            "../envs/runtime.yml"
        threads: CONFIG.evaluate.baseline_threads
        resources:
            mem_mb=8000,
            runtime=60,
        shell:
            "s2ecosg baseline-train --shards {params.shards} --out {params.out} --settings {params.settings} --log {log}"

    rule baseline_tile:
        input:
            model=f"{RESULTS}/baseline/model.txt",
            card=f"{RESULTS}/baseline/card.json",
            stage=tile_block_manifest("stage"),
        output:
            f"{RESULTS}/baseline/{{tile}}.tif",
        params:
            folder=input_folder("card"),
            image=f"{RESULTS}/stage/{{tile}}.tif",
        log:
            f"{LOGS}/baseline/{{tile}}.log",
        benchmark:
            f"{BENCHMARKS}/baseline/{{tile}}.tsv"
        conda:
            "../envs/runtime.yml"
        resources:
            mem_mb=4000,
            runtime=30,
        shell:
            "s2ecosg baseline-predict --model-dir {params.folder} --image {params.image} --classes {output} --log {log}"

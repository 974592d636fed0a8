# evaluate: agreement with the reference labels on the validation blocks (whole area in predict-only runs), and
# with evaluate.ecosg the original ECOSG scored on the same pixels at CLC levels 1 and 2; with evaluate.baseline a
# per-pixel LightGBM baseline (same bands, same split) trained and scored beside the CNN.


rule evaluate:
    input:
        predicted=manifests("predict"),
        labelled=manifests("labels"),
        staged=manifests("stage"),
        card=f"{BUNDLE}/bundle.json",
        split=[] if PREDICT_ONLY else LAYOUT.shards("split.geojson"),
        ecosg=ecosg_reference_files(),
        points=[CONFIG.evaluate.points] if CONFIG.evaluate.points else [],
        baseline=tile_files("baseline", "classes") if BASELINE else [],
    output:
        metrics=LAYOUT.evaluate("metrics.json"),
        report=LAYOUT.evaluate("metrics.md"),
        html=report(LAYOUT.evaluate("metrics.html"), caption="../report/metrics.rst", category="Evaluation"),
        picture=report(LAYOUT.evaluate("panels.png"), caption="../report/panels.rst", category="Evaluation"),
        reliability=report(
            LAYOUT.evaluate("reliability.png"), caption="../report/reliability.rst", category="Evaluation"
        ),
    params:
        config=depends_on("evaluate", "labels"),
        predicted=repeated("--predicted", "predicted"),
        labelled=repeated("--labelled", "labelled"),
        staged=repeated("--staged", "staged"),
        split=lambda wildcards, input: f"--split {input.split}" if input.split else "",
        baseline=repeated("--baseline", "baseline"),
    log:
        LAYOUT.log("evaluate.log"),
    benchmark:
        LAYOUT.benchmark("evaluate.tsv")
    conda:
        "../envs/runtime.yml"
    resources:
        run_config=RUN_CONFIG,  # the whole config, read by the command (not a rerun trigger)
        mem_mb=8000,
        runtime=30,
    shell:
        "s2ecosg evaluate --run-config {resources.run_config} --card {input.card} --metrics {output.metrics} {params.split}"
        " {params.predicted} {params.labelled} {params.staged} {params.baseline} --log {log}"


if BASELINE:

    rule baseline_train:
        input:
            **rules.shards_index.output,
        output:
            model=LAYOUT.baseline("model.txt"),
            card=LAYOUT.baseline("card.json"),
        params:
            config=depends_on("evaluate", "train"),
        log:
            LAYOUT.log("baseline", "train.log"),
        benchmark:
            LAYOUT.benchmark("baseline", "train.tsv")
        conda:
            "../envs/runtime.yml"
        threads: CONFIG.evaluate.baseline_threads
        resources:
            run_config=RUN_CONFIG,  # the whole config, read by the command (not a rerun trigger)
            mem_mb=8000,
            runtime=60,
        shell:
            "s2ecosg baseline-train --run-config {resources.run_config} --index {input.index} --card {output.card} --log {log}"

    rule baseline_tile:
        input:
            model=LAYOUT.baseline("model.txt"),
            card=LAYOUT.baseline("card.json"),
            stage=tile_block_manifest("stage"),
        output:
            LAYOUT.tile("baseline", "classes", "{tile}"),
        params:
            image=LAYOUT.tile("stage", "image", "{tile}"),
        log:
            LAYOUT.log("baseline", "{tile}.log"),
        benchmark:
            LAYOUT.benchmark("baseline", "{tile}.tsv")
        conda:
            "../envs/runtime.yml"
        resources:
            mem_mb=4000,
            runtime=30,
        shell:
            "s2ecosg baseline-predict --card {input.card} --image {params.image} --classes {output} --log {log}"

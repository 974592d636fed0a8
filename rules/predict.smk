# predict: class ids and confidence per grid tile, one job per block of tiles (one model build), and a VRT mosaic
# over all tiles. A block is predicted as one region with a halo from the neighbouring blocks' staged tiles, so that
# block edges are predicted like interiors (and a restaged tile re-predicts the blocks its halo reaches too).


rule predict_block:
    input:
        weights=f"{BUNDLE}/weights.pt",
        card=f"{BUNDLE}/bundle.json",
        stage=predict_stage_manifests,
    output:
        manifest=LAYOUT.manifest("predict", "{block}"),
    params:
        config=depends_on("predict", "grid", "labels"),
    log:
        LAYOUT.log("predict", "{block}.log"),
    benchmark:
        LAYOUT.benchmark("predict", "{block}.tsv")
    conda:
        "../envs/runtime.yml"
    threads: 2
    resources:
        run_config=RUN_CONFIG,  # the whole config, read by the command (not a rerun trigger)
        mem_mb=memory_mb(predict_need),  # ≈ 2.7 GB for 5 × 5 tiles of 10 km: the block's width, a batch of windows
        runtime=block_runtime(10, 3),
        gpu=1,
        tasks_per_gpu=0,
    shell:
        "s2ecosg predict --run-config {resources.run_config} --card {input.card} --manifest {output.manifest} --log {log}"
        " {input.stage}"


rule mosaic:
    input:
        manifests("predict"),
    output:
        LAYOUT.mosaic,
    log:
        LAYOUT.log("predict", "mosaic.log"),
    benchmark:
        LAYOUT.benchmark("predict", "mosaic.tsv")
    conda:
        "../envs/runtime.yml"
    shell:
        "s2ecosg mosaic --out {output} --log {log} {input}"

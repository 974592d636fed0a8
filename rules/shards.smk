# shards: training/validation patches with a global spatial-block split, one job per block of tiles writing a
# shard per tile (arrays + header), then a small index job that lists them and merges their band statistics.


rule shards_block:
    input:
        stage=LAYOUT.manifest("stage", "{block}"),
        labels=LAYOUT.manifest("labels", "{block}"),
    output:
        manifest=LAYOUT.manifest("shards", "{block}"),
    params:
        config=depends_on("shards", "grid", "labels"),
    log:
        LAYOUT.log("shards", "{block}.log"),
    benchmark:
        LAYOUT.benchmark("shards", "{block}.tsv")
    conda:
        "../envs/runtime.yml"
    resources:
        run_config=RUN_CONFIG,  # the whole config, read by the command (not a rerun trigger)
        mem_mb=4000,  # one tile's image and labels at a time
        runtime=block_runtime(10, 2),
    shell:
        "s2ecosg shards --run-config {resources.run_config} --stage-manifest {input.stage} --labels-manifest {input.labels}"
        " --manifest {output.manifest} --log {log}"


rule shards_index:
    input:
        manifests("shards"),
    output:
        index=LAYOUT.shards("index.json"),
        split=LAYOUT.shards("split.geojson"),
        stats=LAYOUT.shards("stats.json"),
    params:
        config=depends_on("shards", "grid", "labels"),
    log:
        LAYOUT.log("shards", "index.log"),
    benchmark:
        LAYOUT.benchmark("shards", "index.tsv")
    conda:
        "../envs/runtime.yml"
    resources:
        run_config=RUN_CONFIG,  # the whole config, read by the command (not a rerun trigger)
        mem_mb=2000,  # headers only
        runtime=30,
    shell:
        "s2ecosg shards-index --run-config {resources.run_config} --index {output.index} --log {log} {input}"

# shards: training/validation patches with a global spatial-block split, one job per block of tiles writing a
# shard per tile (arrays + header), then a small index job that lists them and merges their band statistics.


rule shards_block:
    input:
        stage=f"{RESULTS}/stage/blocks/{{block}}.json",
        labels=f"{RESULTS}/labels/blocks/{{block}}.json",
    output:
        manifest=f"{RESULTS}/shards/blocks/{{block}}.json",
    params:
        settings=settings("shards", "grid", "labels"),
        folder=block_stage_folder("manifest"),
    log:
        f"{LOGS}/shards/{{block}}.log",
    benchmark:
        f"{BENCHMARKS}/shards/{{block}}.tsv"
    conda:
        "../envs/runtime.yml"
    resources:
        mem_mb=4000,  # one tile's image and labels at a time
        runtime=block_runtime(10, 2),
    shell:
        "s2ecosg shards --settings {params.settings} --stage-manifest {input.stage} --labels-manifest {input.labels}"
        " --folder {params.folder} --manifest {output.manifest} --log {log}"


rule shards_index:
    input:
        per_block(f"{RESULTS}/shards/blocks/{{block}}.json"),
    output:
        index=f"{RESULTS}/shards/index.json",
        split=f"{RESULTS}/shards/split.geojson",
        stats=f"{RESULTS}/shards/stats.json",
    params:
        settings=settings("shards", "grid", "labels"),
        folder=output_folder("index"),
    log:
        f"{LOGS}/shards/index.log",
    benchmark:
        f"{BENCHMARKS}/shards/index.tsv"
    conda:
        "../envs/runtime.yml"
    resources:
        mem_mb=2000,  # headers only
        runtime=30,
    shell:
        "s2ecosg shards-index --settings {params.settings} --folder {params.folder} --log {log} {input}"

# shards: training/validation patches with a spatial-block split and band statistics.


rule shards:
    input:
        images=per_block(f"{RESULTS}/stage/blocks/{{block}}.json"),
        labels=per_block(f"{RESULTS}/labels/blocks/{{block}}.json"),
    output:
        train_images=f"{RESULTS}/shards/train_images.npy",
        train_labels=f"{RESULTS}/shards/train_labels.npy",
        val_images=f"{RESULTS}/shards/val_images.npy",
        val_labels=f"{RESULTS}/shards/val_labels.npy",
        split=f"{RESULTS}/shards/split.geojson",
        stats=f"{RESULTS}/shards/stats.json",
    params:
        settings=settings("shards", "grid", "labels"),
        tiles=joined_tiles,
        stage_dir=f"{RESULTS}/stage",
        labels_dir=f"{RESULTS}/labels",
        out=output_folder("stats"),
    log:
        f"{LOGS}/shards.log",
    benchmark:
        f"{BENCHMARKS}/shards.tsv"
    conda:
        "../envs/runtime.yml"
    resources:
        mem_mb=8000,
        runtime=60,
    shell:
        "s2ecosg shards --settings {params.settings} --stage-dir {params.stage_dir} --labels-dir {params.labels_dir}"
        " --tiles {params.tiles} --out {params.out} --log {log}"

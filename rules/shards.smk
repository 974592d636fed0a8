# shards: training/validation patches with a spatial-block split and band statistics.


rule shards:
    input:
        images=per_tile(f"{RESULTS}/stage/{{tile}}.tif"),
        labels=per_tile(f"{RESULTS}/labels/{{tile}}.tif"),
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
        stage_dir=input_folder("images"),
        labels_dir=input_folder("labels"),
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

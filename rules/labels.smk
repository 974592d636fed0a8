# labels: the reference map on each grid tile, as class ids of the legend; one job per block of tiles.


rule labels_block:
    input:
        reference=CONFIG.labels.path or [],
        tile_lists=block_tile_lists,  # which tiles of the block have imagery (the inventory checkpoint knows)
    output:
        manifest=LAYOUT.manifest("labels", "{block}"),
    params:
        config=depends_on("labels", "grid"),
        tiles=lambda wildcards, input: ",".join(os.path.basename(path)[: -len(".json")] for path in input.tile_lists),
    log:
        LAYOUT.log("labels", "{block}.log"),
    benchmark:
        LAYOUT.benchmark("labels", "{block}.tsv")
    conda:
        "../envs/runtime.yml"
    resources:
        run_config=RUN_CONFIG,  # the whole config, read by the command (not a rerun trigger)
        mem_mb=4000,
        runtime=block_runtime(10, 5),
    shell:
        "s2ecosg labels --run-config {resources.run_config} --tiles {params.tiles} --manifest {output.manifest} --log {log}"

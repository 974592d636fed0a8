# stage: find scenes (checkpoint: the tiles are known only after it), then one job per block of grid tiles
# (grid.block_tiles), writing one composite per tile.


checkpoint inventory:
    input:
        [str(path) for path in IMAGERY],
    output:
        inventory=LAYOUT.inventory,
    params:
        config=depends_on("imagery", "grid", "domain"),
        archive=IMAGERY_FINGERPRINT,
        tile_lists=LAYOUT.results("stage", "scenes"),
    log:
        LAYOUT.log("stage", "inventory.log"),
    benchmark:
        LAYOUT.benchmark("stage", "inventory.tsv")
    conda:
        "../envs/runtime.yml"
    resources:
        run_config=RUN_CONFIG,  # the whole config, read by the command (not a rerun trigger)
        mem_mb=2000,
        runtime=30,
    shell:
        "s2ecosg inventory --run-config {resources.run_config} --out {output.inventory}"
        " --tile-lists {params.tile_lists} --log {log}"


rule stage_block:
    input:
        tile_lists=block_tile_lists,
    output:
        manifest=LAYOUT.manifest("stage", "{block}"),
    params:
        config=stage_depends_on(),
    log:
        LAYOUT.log("stage", "{block}.log"),
    benchmark:
        LAYOUT.benchmark("stage", "{block}.tsv")
    conda:
        "../envs/runtime.yml"
    threads: 2
    resources:
        run_config=RUN_CONFIG,  # the whole config, read by the command (not a rerun trigger)
        mem_mb=memory_mb(stage_need),  # one scene's parts of the block's tiles: not the number of scenes
        runtime=block_runtime(10, 20),
    shell:
        "s2ecosg stage --run-config {resources.run_config} --manifest {output.manifest} --threads {threads} --log {log}"
        " {input.tile_lists}"

# stage: find scenes (checkpoint: the tiles are known only after it), then one job per block of grid tiles
# (grid.block_tiles), writing one composite per tile.


checkpoint inventory:
    input:
        [str(path) for path in IMAGERY],
    output:
        inventory=f"{RESULTS}/stage/inventory.json",
    params:
        settings=settings("imagery", "grid", "domain"),
        archive=IMAGERY_FINGERPRINT,
        tile_lists=f"{RESULTS}/stage/scenes",
    log:
        f"{LOGS}/stage/inventory.log",
    benchmark:
        f"{BENCHMARKS}/stage/inventory.tsv"
    conda:
        "../envs/runtime.yml"
    resources:
        mem_mb=2000,
        runtime=30,
    shell:
        "s2ecosg inventory --settings {params.settings} --out {output.inventory}"
        " --tile-lists {params.tile_lists} --log {log}"


rule stage_block:
    input:
        tile_lists=block_tile_lists,
    output:
        manifest=f"{RESULTS}/stage/blocks/{{block}}.json",
    params:
        settings=stage_settings(),
        folder=block_stage_folder("manifest"),
    log:
        f"{LOGS}/stage/{{block}}.log",
    benchmark:
        f"{BENCHMARKS}/stage/{{block}}.tsv"
    conda:
        "../envs/runtime.yml"
    threads: 2
    resources:
        mem_mb=4000,  # one tile at a time: memory does not grow with the block
        runtime=block_runtime(10, 20),
    shell:
        "s2ecosg stage --settings {params.settings} --folder {params.folder} --manifest {output.manifest}"
        " --threads {threads} --log {log} {input.tile_lists}"

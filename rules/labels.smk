# labels: the reference map on each grid tile, as class ids of the legend; one job per block of tiles.


rule labels_block:
    input:
        reference=CONFIG.labels.path or [],
        tile_lists=block_tile_lists,  # which tiles of the block have imagery (the inventory checkpoint knows)
    output:
        manifest=f"{RESULTS}/labels/blocks/{{block}}.json",
    params:
        settings=settings("labels", "grid"),
        tiles=lambda wildcards, input: ",".join(os.path.basename(path)[: -len(".json")] for path in input.tile_lists),
        folder=block_stage_folder("manifest"),
    log:
        f"{LOGS}/labels/{{block}}.log",
    benchmark:
        f"{BENCHMARKS}/labels/{{block}}.tsv"
    conda:
        "../envs/runtime.yml"
    resources:
        mem_mb=4000,
        runtime=block_runtime(10, 5),
    shell:
        "s2ecosg labels --settings {params.settings} --tiles {params.tiles} --folder {params.folder}"
        " --manifest {output.manifest} --log {log}"

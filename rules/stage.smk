# stage: find scenes (checkpoint: the tiles are known only after it), then one composite per grid tile.


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


rule stage_tile:
    input:
        tile_list=tile_list,
    output:
        image=f"{RESULTS}/stage/{{tile}}.tif",
        valid_count=f"{RESULTS}/stage/{{tile}}.count.tif",
    params:
        settings=stage_settings(),
    log:
        f"{LOGS}/stage/{{tile}}.log",
    benchmark:
        f"{BENCHMARKS}/stage/{{tile}}.tsv"
    conda:
        "../envs/runtime.yml"
    threads: 2
    resources:
        mem_mb=4000,
        runtime=60,
    shell:
        "s2ecosg stage --settings {params.settings} --tile-list {input.tile_list} --threads {threads}"
        " --image {output.image} --count {output.valid_count} --log {log}"

# labels: the reference map on each grid tile, as class ids of the legend.


rule labels_tile:
    input:
        reference=CONFIG.labels.path or [],
    output:
        f"{RESULTS}/labels/{{tile}}.tif",
    params:
        settings=settings("labels", "grid"),
    log:
        f"{LOGS}/labels/{{tile}}.log",
    benchmark:
        f"{BENCHMARKS}/labels/{{tile}}.tsv"
    conda:
        "../envs/runtime.yml"
    resources:
        mem_mb=4000,
        runtime=30,
    shell:
        "s2ecosg labels --settings {params.settings} --tile {wildcards.tile} --out {output} --log {log}"

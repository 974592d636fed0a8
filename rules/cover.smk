# cover: ECOSG covers on a regular lat/lon grid, written as the SURFEX DIRECT pair + namelist, validated.


rule cover:
    input:
        predicted=per_block(f"{RESULTS}/predict/blocks/{{block}}.json"),
        card=f"{BUNDLE}/bundle.json",
        scene_lists=per_tile(f"{RESULTS}/stage/scenes/{{tile}}.json"),
        fill=cover_fill_files(),
        sea_mask=CONFIG.cover.sea_mask or [],
        zones=[] if CONFIG.cover.climate in CLIMATES else CONFIG.cover.climate,
    output:
        binary=f"{COVER}.dir",
        header=f"{COVER}.hdr",
        netcdf=f"{COVER}.nc",
        namelist=f"{COVER}.nam",
        picture=report(f"{COVER}.png", caption="../report/cover.rst", category="Cover"),
        readme=f"{RESULTS}/cover/README.md",
        validation=f"{RESULTS}/cover/validation.txt",
    params:
        settings=settings("cover", "domain"),
        tiles=joined_tiles,
        bundle=input_folder("card"),
        predict_dir=f"{RESULTS}/predict",
        basename=lambda wildcards, output: output.binary[: -len(".dir")],
        scene_lists=input_folder("scene_lists"),
    log:
        f"{LOGS}/cover.log",
    benchmark:
        f"{BENCHMARKS}/cover.tsv"
    conda:
        "../envs/runtime.yml"
    resources:
        mem_mb=8000,
        runtime=60,
    shell:
        "s2ecosg cover --settings {params.settings} --bundle {params.bundle} --predict-dir {params.predict_dir}"
        " --tiles {params.tiles} --scene-lists {params.scene_lists} --basename {params.basename} --log {log}"

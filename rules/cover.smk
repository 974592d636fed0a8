# cover: ECOSG covers on a regular lat/lon grid, written as the SURFEX DIRECT pair + namelist, validated; with
# cover.members, ensemble members drawn from the calibrated top-2 probabilities beside it.


rule cover:
    input:
        predicted=manifests("predict"),
        staged=manifests("stage"),
        card=f"{BUNDLE}/bundle.json",
        scene_lists=tile_files("scenes", "list"),
        fill=cover_fill_files(),
        sea_mask=CONFIG.cover.sea_mask or [],
        zones=[] if CONFIG.cover.climate in CLIMATES else CONFIG.cover.climate,
    output:
        binary=f"{COVER}.dir",
        header=f"{COVER}.hdr",
        netcdf=f"{COVER}.nc",
        namelist=f"{COVER}.nam",
        picture=report(f"{COVER}.png", caption="../report/cover.rst", category="Cover"),
        readme=LAYOUT.cover_file("README.md"),
        validation=LAYOUT.cover_file("validation.txt"),
        members=[  # ensemble members (cover.members): the pairs and namelists PGD reads, one per HarmonEPS member
            f"{COVER}_M{number:02d}.{suffix}"
            for number in range(1, CONFIG.cover.members + 1)
            for suffix in ("dir", "hdr", "nam")
        ],
    params:
        config=depends_on("cover", "domain"),
        scene_lists=repeated("--scene-list", "scene_lists"),
        staged=repeated("--stage-manifest", "staged"),
        cache=LAYOUT.cover_cache,
    threads: 8  # processes aggregating output blocks (Snakemake lowers it to --cores)
    log:
        LAYOUT.log("cover.log"),
    benchmark:
        LAYOUT.benchmark("cover.tsv")
    conda:
        "../envs/runtime.yml"
    resources:
        run_config=RUN_CONFIG,  # the whole config, read by the command (not a rerun trigger)
        mem_mb=cover_memory_mb,
        runtime=60,
    shell:
        "s2ecosg cover --run-config {resources.run_config} --card {input.card} --binary {output.binary} {params.scene_lists}"
        " {params.staged} --threads {threads} --cache {params.cache}"
        " --log {log} {input.predicted}"


# tree (cover.tree): the ECOCLIMAP-SG data tree HARMONIE, DEODE and pysurfex read (tree/ECOCLIMAP-SG, members
# tree/ECOCLIMAP-SG_Mnn): the service's tree linked, COVER/ecosg_final_map the run's cover or the service's map
# patched with the predictions.


rule tree:
    input:
        predicted=manifests("predict"),
        card=f"{BUNDLE}/bundle.json",
        binary=f"{COVER}.dir",
        scene_lists=tile_files("scenes", "list"),
    output:
        [tree_cover(member, suffix) for member in range(CONFIG.cover.members + 1) for suffix in ("dir", "hdr")],
    params:
        config=depends_on("cover", "domain"),
        scene_lists=repeated("--scene-list", "scene_lists"),
        out=lambda wildcards, output: os.path.dirname(os.path.dirname(output[0])),  # tree/ECOCLIMAP-SG
    threads: 8  # processes aggregating blocks of a patched map (Snakemake lowers it to --cores)
    log:
        LAYOUT.log("tree.log"),
    benchmark:
        LAYOUT.benchmark("tree.tsv")
    conda:
        "../envs/runtime.yml"
    resources:
        run_config=RUN_CONFIG,  # the whole config, read by the command (not a rerun trigger)
        mem_mb=8000,
        runtime=60,
    shell:
        "s2ecosg tree --run-config {resources.run_config} --card {input.card} --binary {input.binary}"
        " {params.scene_lists} --out {params.out} --threads {threads} --log {log} {input.predicted}"

# train: U-Net on the shards → model bundle. Left out of the DAG when model.bundle names an existing bundle.
# One SLURM job (tasks_per_gpu=0: the plugin starts the command once); the command itself starts one process
# per GPU through the launcher of train.backend (torchrun, horovodrun, or srun across nodes). --log-path is --log
# under a name horovodrun's parser does not take for an abbreviation of its own --log-* options.

if not PREDICT_ONLY:

    rule train:
        input:
            **rules.shards_index.output,
        output:
            weights=LAYOUT.bundle("weights.pt"),
            card=LAYOUT.bundle("bundle.json"),
        params:
            config=depends_on("model", "train", "labels", "shards"),
            checkpoints=LAYOUT.checkpoints,
            launch=train_launcher,
        log:
            LAYOUT.log("train.log"),
        benchmark:
            LAYOUT.benchmark("train.tsv")
        conda:
            "../envs/runtime.yml"
        threads: 2
        resources:
            run_config=RUN_CONFIG,  # the whole config, read by the command (not a rerun trigger)
            mem_mb=16000,
            runtime=720,
            gpu=0 if CONFIG.train.device == "cpu" else 1,
            nodes=1,
            tasks_per_gpu=0,
        shell:
            "{params.launch} s2ecosg train --run-config {resources.run_config} --index {input.index}"
            " --checkpoints {params.checkpoints} --card {output.card} --log-path {log}"

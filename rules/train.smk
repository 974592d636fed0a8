# train: U-Net on the shards → model bundle. Left out of the DAG when model.bundle names an existing bundle.
# One SLURM job (tasks_per_gpu=0: the plugin starts the command once); the command itself starts one process
# per GPU through the launcher of train.backend (torchrun, horovodrun, or srun across nodes). --log-path is --log
# under a name horovodrun's parser does not take for an abbreviation of its own --log-* options.

if not PREDICT_ONLY:

    rule train:
        input:
            **rules.shards_index.output,
        output:
            weights=f"{RESULTS}/model/weights.pt",
            card=f"{RESULTS}/model/bundle.json",
        params:
            settings=settings("model", "train", "labels", "shards"),
            checkpoints=f"{RESULTS}/train/checkpoints",
            shards=input_folder("stats"),
            bundle=output_folder("card"),
            launch=train_launcher,
        log:
            f"{LOGS}/train.log",
        benchmark:
            f"{BENCHMARKS}/train.tsv"
        conda:
            "../envs/runtime.yml"
        threads: 2
        resources:
            mem_mb=16000,
            runtime=720,
            gpu=0 if CONFIG.train.device == "cpu" else 1,
            nodes=1,
            tasks_per_gpu=0,
        shell:
            "{params.launch} s2ecosg train --settings {params.settings} --shards {params.shards}"
            " --checkpoints {params.checkpoints} --bundle {params.bundle} --log-path {log}"

"""Training-side code: data, degradations, the teacher, losses, the training loop.

Nothing here is imported by the CLI's upscale path; this package may depend on torch,
OpenCV and tqdm freely.  Hooks into the shipped networks that only training needs live
here too, not in ``archs/``.

Modules:
    Data:
        split: the fixed train / validation split of the training photographs.
        kernels: blur kernels (Gaussian, generalised Gaussian, plateau, sinc) and their
            sampling.
        degradations: the seeded second-order degradation pipeline and the light kinds
            mixed into batches.
        teacher: loading the Real-ESRGAN x4plus teacher from its ncnn files.
        patches: sampling, degrading and teacher-labelling patches into resumable shards.
        make_patches: the ``python -m pocketsr_cli.train.make_patches`` job.
        online: patches made and labelled while training, on the training device.
        dataset: a torch ``Dataset`` over the shards with dihedral augmentation.
    Training:
        losses: the distillation losses (pixel, teacher features, spectrum, detail band,
            lattice grid, patch discriminator).
        taps: intermediate features of a pocketsr generator for feature distillation.
        anneal: PocketSR's online annealing pruning (and the blocks it may swap).
        compact: starting points for the SRVGG-compact quality student.
        trainer: the resumable distillation trainer (:class:`~.trainer.TrainConfig`).
        loop: the step loop and EMA update both trainers share.
        validate: scores on the validation photos, as ``pocketsr eval`` scores.
        cmdline: the parser of every ``python -m pocketsr_cli.train.*`` command (a bad
            command line: the error and a pointer to ``--help``, exit 2).
        run: ``python -m pocketsr_cli.train.run``, one documented command per run.
        export: ``python -m pocketsr_cli.train.export``, a checkpoint's EMA weights.
        pcsr: ``python -m pocketsr_cli.train.pcsr``, PCSR's two training phases on the
            ground truth (no teacher, query sampling, frozen phase-1 parts).
"""

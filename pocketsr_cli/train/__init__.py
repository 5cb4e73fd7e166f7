"""Training-side code: degradations, photo split, distillation patches, datasets.

Nothing here is imported by the CLI's upscale path; this package may depend on torch,
OpenCV and tqdm freely.

Modules:
    kernels: blur kernels (Gaussian, generalised Gaussian, plateau, sinc) and their sampling.
    degradations: the seeded second-order degradation pipeline and the eval degradations.
    split: the fixed held-out split of the training photographs.
    teacher: loading the Real-ESRGAN x4plus teacher from its ncnn files.
    patches: sampling, degrading and teacher-labelling patches into resumable shards.
    make_patches: the ``python -m pocketsr_cli.train.make_patches`` job.
    dataset: a torch ``Dataset`` over the shards with dihedral augmentation.
"""

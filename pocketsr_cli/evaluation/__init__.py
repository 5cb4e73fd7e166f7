"""Measuring models: the eval degradations, metrics, scoring runs and speed benches.

* :mod:`~pocketsr_cli.evaluation.degrade` — the deterministic ``bicubic``/``real`` LR images;
* :mod:`~pocketsr_cli.evaluation.metrics` — PSNR-Y, SSIM-Y, sharpness, lattice ratio;
* :mod:`~pocketsr_cli.evaluation.run` — :func:`~pocketsr_cli.evaluation.run.evaluate`;
* :mod:`~pocketsr_cli.evaluation.bench` — :func:`~pocketsr_cli.evaluation.bench.bench`;
* :mod:`~pocketsr_cli.evaluation.macs` — multiply-accumulates of a network, by forward hooks.

Nothing here prints; progress and warnings go through callbacks.  The training code
(``pocketsr_cli.train``) may import from here, never the other way round.
"""

"""semisep's own correctness suite, shipped with the package so that users can run it on their
hardware: ``semisep.test()`` or ``python -m semisep test --device cuda``.

These tests judge values against :mod:`semisep.reference`, gradients with
``torch.autograd.gradcheck``, and bad inputs; slow benchmarks and repository-only tests live in
the repository's ``tests/``.
"""

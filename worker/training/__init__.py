"""TransferLab transfer-learning engine.

A plain library: ``worker.training.engine.train(spec, data, callbacks, workdir)`` trains and exports a
model. Import the submodules you need; this package imports nothing heavy on purpose (``spec`` and
``catalog`` stay importable without TensorFlow).
"""

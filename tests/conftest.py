"""Shared pytest fixtures."""

import pathlib

import pytest


@pytest.fixture(scope="session")
def shared_data_dir():
    """``<repo>/../shared/data``, which holds the real mnist/ and fashion-mnist/ IDX .gz files."""
    path = pathlib.Path(__file__).resolve().parents[1].parent / "shared" / "data"
    if not path.is_dir():
        pytest.fail(f"shared data folder {path} is missing: it must hold mnist/ and fashion-mnist/ with the four IDX .gz files each")
    return path


@pytest.fixture(scope="session")
def real_mnist(shared_data_dir):
    """The real MNIST data set, loaded once per session."""
    from hrs_tf import data
    return data.load_dataset("mnist", shared_data_dir)


@pytest.fixture(scope="session")
def tiny_mnist_dir(tmp_path_factory, real_mnist):
    """A data dir holding ``mnist.npz`` with the first 1000 training and 300 test images of real MNIST."""
    import numpy as np

    folder = tmp_path_factory.mktemp("tiny_mnist")
    to_uint8 = lambda x: np.round(x[..., 0] * 255).astype(np.uint8)  # noqa: E731
    np.savez(folder / "mnist.npz", x_train=to_uint8(real_mnist.x_train[:1000]), y_train=real_mnist.y_train[:1000].astype(np.uint8),
             x_test=to_uint8(real_mnist.x_test[:300]), y_test=real_mnist.y_test[:300].astype(np.uint8))
    return folder


@pytest.fixture(scope="session")
def ray_executor():
    """A local Ray instance with 2 workers for the Ray tests (skipped without Ray), shared by every test file a pytest
    process runs. Workers get as many TensorFlow threads as this process (two here): sums split alike, so a cell's
    result equals the local executor's to the bit."""
    import os

    pytest.importorskip("ray")
    from hrs_tf.experiments.execution.ray_cluster import RayExecutor

    executor = RayExecutor(workers=2, threads=os.cpu_count(), log=lambda line: None)
    yield executor
    executor.close()

"""The explain extra (grad-cam: opencv-python-headless) and the track extra (boxmot: opencv-python) install
the same ``cv2/`` folder, so whichever wheel came last supplies it. Both are held to OpenCV 4 so that either
copy is the same OpenCV; this fails when they drift apart and ``cv2`` is a mix of two releases."""

from __future__ import annotations

from importlib.metadata import distributions


def opencv_distributions() -> dict[str, str]:
    """Installed OpenCV wheels by normalised name (``opencv-python``, ``opencv-python-headless``, ...)."""
    names = {(d.metadata["Name"] or "").lower().replace("_", "-"): d.version for d in distributions()}
    return {n: v for n, v in names.items() if n.startswith("opencv-")}


def test_cv2_is_the_release_of_every_opencv_wheel() -> None:
    import cv2

    wheels = opencv_distributions()
    # make test installs the dev extra, which pulls both explain's and track's wheel
    assert {"opencv-python", "opencv-python-headless"} <= set(wheels), wheels
    for name, ver in wheels.items():
        assert ver == cv2.version.opencv_version, (name, ver, "python side", cv2.version.opencv_version)
        assert ver.split(".")[:3] == cv2.__version__.split("."), (name, ver, "binary", cv2.__version__)

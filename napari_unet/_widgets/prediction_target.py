"""What the hot swap and the background re-prediction need from the predict panel (no Qt).

:class:`~napari_unet._widgets.hot_swap.HotSwap` and
:class:`~napari_unet._widgets.repredict.Repredictor` talk to the predict panel only through this
protocol (the predict panel implements it), and to everything else through the viewer's
:class:`~napari_unet._widgets.loop_state.LoopState` (session, models, jobs). So neither imports
the panel, and the panel's private attributes stay private.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from napari_unet._widgets.predict_worker import PostprocessChoice
    from napari_unet.core.inference.config import PredictConfig


class PredictionTarget(Protocol):
    """The predict panel as seen by the hot swap and the re-prediction.

    Attributes:
        viewer: the napari viewer.
        writer: writes a ``JobResult`` into the labels/probability layers
            (:class:`~napari_unet._widgets.output.OutputWriter`).
        num_threads: torch threads for its jobs (None: the default).
        picker: the model picker (``populate``, ``select_version``, ``version_id``,
            ``model_changed``, ``version_source``).
    """

    viewer: Any
    writer: Any
    num_threads: int | None

    @property
    def picker(self) -> Any:
        """The model picker."""

    def image_layer(self) -> Any:
        """The image layer chosen for prediction, or None."""

    def chosen_axes(self) -> str | None:
        """The axes chosen by hand for that image, or None."""

    def predict_settings(self) -> PredictConfig:
        """The ``PredictConfig`` chosen in the panel."""

    def postprocess_settings(self) -> PostprocessChoice:
        """The post-processing chosen in the panel (over the model's stored defaults)."""

    def show_message(self, text: str, source: str = "run") -> None:
        """Show ``text`` in the red message line."""

    def show_status(self, text: str) -> None:
        """Show ``text`` in the status line."""


__all__ = ["PredictionTarget"]

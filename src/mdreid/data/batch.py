"""The dict a dataset item and a collated batch are: the one hand-off between the data and the model."""

from __future__ import annotations

from typing import TypedDict

from torch import Tensor


class _TripletFields(TypedDict):
    """Every item has these; shapes are per item, a collated batch adds a leading batch axis."""

    RGB: Tensor  # float [3, H, W]; zeros when absent; the image keys are modalities.MODALITIES
    NI: Tensor
    TI: Tensor
    present: Tensor  # bool [3]: R, N, T
    pid: Tensor  # raw identity
    camid: Tensor
    sceneid: Tensor
    label: Tensor  # training label; -1 in evaluation
    index: Tensor  # position in the train records (training) or in the evaluation listing


class Batch(_TripletFields, total=False):
    """An item of ``TrainTripletDataset`` / ``EvalTripletDataset``, or a batch of them; the roles are set in
    evaluation only (a sample may be both, as in RGBNT201)."""

    is_query: Tensor  # bool
    is_gallery: Tensor  # bool

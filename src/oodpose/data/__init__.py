"""The data layer: DeepLabCut/Horse-10 labels, splits, scales, the prepared cache and the Dataset."""

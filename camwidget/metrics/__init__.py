"""Faithfulness, localisation and map-quality metrics for saliency maps.

- :func:`insertion_deletion` -- RISE's insertion and deletion curves and AUCs (:class:`Curves`), with
  :func:`perturbed_image` for the image scored at any step.
- :func:`road` -- ROAD (remove and debias): the probability change after imputing a percentile of the most
  or least relevant pixels by noisy linear imputation; :func:`road_images` shows the imputed inputs.
- :func:`average_drop_increase_gain` -- Average Drop / Increase / Gain. Read AD beside AG: an all-ones map
  scores a perfect AD = 0 (and AG = 0). :func:`confidence_change` -- pytorch-grad-cam's Drop in
  Confidence and Increase in Confidence.
- :func:`sparseness` (Gini), :func:`complexity` (entropy), :func:`l1_complexity` -- from the maps alone.
- :func:`coherency`, :func:`adcc`, :func:`arcc` -- is the map stable when the image is masked by it, and
  the harmonic-mean scores built on it.
- :func:`error_understanding` -- on misclassified images, does the map find the true class's evidence
  (Chen et al., ICLR 2024): confidence paths, average highest confidence, true-class insertion AUC
  (:class:`ErrorUnderstanding`); :func:`misclassified` picks the images.
- :func:`random_logit` -- the map of a random other class compared with the target's (SSIM).
- :func:`sanity_check` -- cascading model-parameter randomisation (Adebayo et al. 2018), with
  :func:`spearman` and :func:`ssim`; :func:`sanity_verdict` passes or fails a method on it (reproducible,
  and dependent on the weights down to the explained layer).
- :func:`energy_pointing_game`, :func:`pointing_game` -- localisation against boxes or masks.
- :func:`compare_methods` -- the above for several methods on the user's images (:class:`Comparison`).

Every function leaves the model exactly as it came and validates its arguments before any forward pass.
"""

from camwidget.metrics.coherency import adcc, arcc, coherency, pearson
from camwidget.metrics.compare import BETTER, COLUMNS, METRICS, UNITS, Comparison, compare_methods
from camwidget.metrics.complexity import complexity, l1_complexity, sparseness
from camwidget.metrics.confidence import average_drop_increase_gain, confidence_change, masked_inputs
from camwidget.metrics.error_understanding import ErrorUnderstanding, error_understanding, misclassified
from camwidget.metrics.imputation import linear_imputation
from camwidget.metrics.insertion_deletion import (
    SUBSTRATES,
    Curves,
    auc,
    blur_images,
    insertion_deletion,
    perturbed_image,
    rise_blur_kernel,
    saliency_ranks,
)
from camwidget.metrics.localization import energy_pointing_game, pointing_game, region_masks
from camwidget.metrics.random_logit import random_logit
from camwidget.metrics.road import road, road_images, road_masks
from camwidget.metrics.sanity import (
    RANDOMISED_MAX,
    REPEAT_MIN,
    SanityVerdict,
    sanity_check,
    sanity_verdict,
    spearman,
    ssim,
)

__all__ = [
    "BETTER",
    "COLUMNS",
    "METRICS",
    "RANDOMISED_MAX",
    "REPEAT_MIN",
    "SUBSTRATES",
    "UNITS",
    "Comparison",
    "Curves",
    "ErrorUnderstanding",
    "SanityVerdict",
    "adcc",
    "arcc",
    "auc",
    "average_drop_increase_gain",
    "blur_images",
    "coherency",
    "compare_methods",
    "complexity",
    "confidence_change",
    "energy_pointing_game",
    "error_understanding",
    "insertion_deletion",
    "l1_complexity",
    "linear_imputation",
    "masked_inputs",
    "misclassified",
    "pearson",
    "perturbed_image",
    "pointing_game",
    "random_logit",
    "region_masks",
    "rise_blur_kernel",
    "road",
    "road_images",
    "road_masks",
    "saliency_ranks",
    "sanity_check",
    "sanity_verdict",
    "sparseness",
    "spearman",
    "ssim",
]

"""Every job kind of the console, wired to the job runner in this one place.

``services.core.jobs`` runs jobs but knows no kind; each capability defines its kinds; this module lists
them. ``install()`` is called by whatever runs or queues jobs: the web app, the command line, the worker.
"""

from __future__ import annotations

from services.core import jobs
from services.dataset_filter.job import FilterKind
from services.faces.job import FacesKind
from services.models.model_search import GridSearchKind
from services.models.retraining import RetrainKind
from services.models.train_jobs import ImportLabelsKind, TrainKind
from services.reuse.catalog import CatalogImportKind
from services.reuse.detection import ReuseKind
from services.reviews.classify import ClassifyKind
from services.reviews.ingest import IngestKind
from services.reviews.label_search import LabelSearchKind
from services.reviews.rescore import RescoreKind
from services.sagemaker.batch import SageMakerTransformKind
from services.sagemaker.training import SageMakerTrainKind
from services.sagemaker.tuning import SageMakerTuneKind

# one instance of each kind per process
KINDS: tuple[jobs.JobKind, ...] = (
    IngestKind(), ClassifyKind(), RescoreKind(), ReuseKind(), CatalogImportKind(), LabelSearchKind(),
    TrainKind(), ImportLabelsKind(), GridSearchKind(), RetrainKind(),
    SageMakerTrainKind(), SageMakerTuneKind(), SageMakerTransformKind(),
    FilterKind(), FacesKind(),
)


def install() -> None:
    """Make every kind known to the job runner (idempotent: the same instances each time)."""
    for kind in KINDS:
        if jobs.KINDS.get(kind.name) is not kind:
            jobs.register(kind)

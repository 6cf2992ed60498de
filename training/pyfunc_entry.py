"""Models-from-code entry: MLflow runs this file to build the pyfunc, so nothing is pickled."""

import mlflow

from training.pyfunc import RecommenderPyfunc

mlflow.models.set_model(RecommenderPyfunc())

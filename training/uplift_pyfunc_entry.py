"""Models-from-code entry of the uplift model: MLflow runs this file to build the pyfunc."""

import mlflow

from training.pyfunc import UpliftPyfunc

mlflow.models.set_model(UpliftPyfunc())

"""Models-from-code entry: MLflow runs this file to build the session pyfunc, so nothing is pickled."""

import mlflow

from training.session_pyfunc import SessionPyfunc

mlflow.models.set_model(SessionPyfunc())

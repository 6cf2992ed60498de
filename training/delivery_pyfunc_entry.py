"""Models-from-code entry for the delivery-time pyfunc: MLflow runs this file, nothing is pickled."""

import mlflow

from training.delivery_pyfunc import DeliveryPyfunc

mlflow.models.set_model(DeliveryPyfunc())

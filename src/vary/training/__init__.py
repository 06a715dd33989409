"""Training: Vary-tiny (a new vision vocabulary) and the Vary-base stages, on Hugging Face Accelerate."""

from vary.training.config import TrainConfig, load_train_config
from vary.training.trainer import train

__all__ = ["TrainConfig", "load_train_config", "train"]

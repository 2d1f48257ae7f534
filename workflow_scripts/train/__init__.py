"""Training: connector pretraining (stage 1) and instruction finetuning (stage 2) with HF Trainer + DeepSpeed."""

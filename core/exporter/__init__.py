"""Export: the service builder, real ONNX export, quantization and the generated service."""

"""Export: the seed's service builder, real ONNX export, quantization and the generated service."""

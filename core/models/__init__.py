"""Base models and prompt formats: the starter model, tiny test models, any local HF folder.

- :mod:`core.models.registry`: resolve a ``base_model`` name (no weights), check LoRA targets,
  load model + tokenizer.
- :mod:`core.models.tiny`: ``tiny-causal`` / ``tiny-seq2seq`` with a byte tokenizer.
- :mod:`core.models.starter`: SmolLM2-135M-Instruct offline (HF cache or shipped GGUF).
- :mod:`core.models.prompting`: the ``tinyforge_prompt.json`` contract shared by training,
  ``predict`` and the ONNX service.

Importing this package loads no torch.
"""

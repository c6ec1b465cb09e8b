"""A run folder's file and folder names: the one place that spells them (see :mod:`core.run_layout`).

Code of core and the GUI takes a run file's name from here; ``tests/core/test_run_layout.py``
fails when a module spells one itself. The service template, which runs without core, spells
the names it reads and the same test checks that they agree.
"""

from __future__ import annotations

RUN_FILE = "run.json"
EVENTS_FILE = "events.jsonl"
MODEL_DIR = "model"  # the run's training output; inside it, the merged model is model/ again
SERVICE_DIR = "service"
RESUME_DIR = "model.cancelled"
TRAINING_REPORT_FILE = "training_report.json"
MODEL_MANIFEST_FILE = "model_manifest.json"
MODEL_STUB_FILE = "model_stub.json"  # a dry run's placeholder model (name kept from TinyForgeAI)
ADAPTER_DIR = "adapter"
CHECKPOINTS_DIR = "checkpoints"
EVALUATION_FILE = "evaluation.json"
VARIANTS_FILE = "variants.jsonl"  # every phrasing a real run trained or held out (core.training.variants)
EVALUATIONS_DIR = "evaluations"  # `foremforge evaluate --data FILE` results, one per file
EXPORT_REPORT_FILE = "export_report.json"
MODEL_METADATA_FILE = "model_metadata.json"
GGUF_DIR = "gguf"  # in a service folder: GGUF files for llama.cpp/Ollama, Modelfile, README.md
MODELFILE = "Modelfile"
PROMPT_FILE = "tinyforge_prompt.json"  # the prompt format: beside a trained model, in a service folder
# In a service folder, besides model_metadata.json, export_report.json and gguf/:
SERVICE_APP_FILE = "app.py"  # the service template's app (what makes a folder a service to run)
TOKENIZER_FILE = "tokenizer.json"  # the fast tokenizer (Hugging Face's name for it)
MODEL_CONFIG_DIR = "model_config"  # the model's tokenizer, generation and model configs
ONNX_DIR = "onnx"  # the graphs and their metadata
ONNX_GRAPH_FILE = "model.onnx"  # the fp32 decoder graph (a dry run: a text placeholder)
ENCODER_GRAPH_FILE = "encoder.onnx"  # a seq2seq model's fp32 encoder graph
ONNX_META_FILE = ONNX_GRAPH_FILE + ".meta.json"  # the graphs' runtime layout, sizes and quantization
QUANT_DIR = "quant"  # in onnx/: the quantized candidates' graphs
QUANTIZED_FILE = "quantized.onnx"  # the dynamic int8 decoder graph (TinyForgeAI's name)

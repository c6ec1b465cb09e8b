"""An exported TinyForge service folder.

It is a package so code written for TinyForgeAI can ``import <folder>.app``; ``app.py`` puts this
folder on ``sys.path`` itself, so ``uvicorn app:app`` run here works the same way.
"""

"""Prompt templates: taskmill's YAML format, PromptSource and FLAN loaders, sandboxed rendering, lint."""

from taskmill.templates.engine import CompiledTemplate, compile_template
from taskmill.templates.fileformat import load_template_file

__all__ = ["CompiledTemplate", "compile_template", "load_template_file"]

"""Shared helpers of the notebook generators: markdown and C# cells, and the Polyglot notebook file format."""
import json

def notebook():
    cells = []
    def md(text):
        cells.append({"cell_type": "markdown", "metadata": {}, "source": text.strip("\n").splitlines(keepends=True)})
    def cs(text):
        cells.append({"cell_type": "code", "execution_count": None, "outputs": [],
                      "metadata": {"dotnet_interactive": {"language": "csharp"}, "polyglot_notebook": {"kernelName": "csharp"}},
                      "source": text.strip("\n").splitlines(keepends=True)})
    def save(path):
        nb = {"cells": cells, "metadata": {"kernelspec": {"display_name": ".NET (C#)", "language": "C#", "name": ".net-csharp"},
              "language_info": {"name": "polyglot-notebook"},
              "polyglot_notebook": {"kernelInfo": {"defaultKernelName": "csharp", "items": [{"aliases": [], "name": "csharp"}]}}},
              "nbformat": 4, "nbformat_minor": 5}
        with open(path, "w") as f:
            json.dump(nb, f, indent=1, ensure_ascii=False)
    return md, cs, save

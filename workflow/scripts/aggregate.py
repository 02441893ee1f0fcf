from pathlib import Path

import pandas as pd

from oodpose import analysis, findings
from oodpose.logs import rule_log

with rule_log(snakemake.log[0]):
    dataset = snakemake.wildcards.dataset
    metrics = pd.concat([pd.read_csv(p) for p in snakemake.input.metrics], ignore_index=True)
    metrics.insert(0, "dataset", dataset)
    missing = analysis.missing_cells(snakemake.params.cells, metrics)
    if len(missing):
        print(f"cells without metrics ({len(missing)}):\n{missing.to_string(index=False)}")
    out = snakemake.output
    missing.to_csv(out.missing, index=False)
    metrics.to_csv(out.metrics, index=False)
    analysis.summary(metrics).to_csv(out.summary, index=False)
    regressions = analysis.regressions(metrics)
    regressions.to_csv(out.regressions, index=False)
    analysis.pretrained_vs_scratch(metrics).to_csv(out.paired, index=False)
    fraction = max(metrics["fraction"])
    table = analysis.table1(metrics, fraction=fraction)
    table.to_csv(out.table1, index=False)
    Path(out.table1_md).write_text(analysis.table1_markdown(table, regressions, fraction))
    claims = findings.findings(metrics, snakemake.params.horse10)
    claims.to_csv(out.findings, index=False)
    Path(out.findings_md).write_text(findings.findings_markdown(claims))

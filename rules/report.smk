rule figures:
    input:
        **horse_c_files(
            {"severity": "results/{dataset}/{summary}/corruptions/severity.csv"}
        ),
        metrics=rules.aggregate.output.metrics,
        cache=rules.prepare.output[0],
        predictions=summary_inputs(rules.evaluate.output.predictions),
    output:
        **horse_c_files(
            {
                "corruptions": report(
                    "results/{dataset}/{summary}/figures/corruptions.png",
                    caption="../report/corruptions.rst",
                    category="3. Figures",
                )
            }
        ),
        figure1=report(
            "results/{dataset}/{summary}/figures/figure1.png",
            caption="../report/figure1.rst",
            category="3. Figures",
        ),
        figure3ab=report(
            "results/{dataset}/{summary}/figures/figure3ab.png",
            caption="../report/figure3ab.rst",
            category="3. Figures",
        ),
        figure3c=report(
            "results/{dataset}/{summary}/figures/figure3c.png",
            caption="../report/figure3c.rst",
            category="3. Figures",
        ),
        figure4_5a=report(
            "results/{dataset}/{summary}/figures/figure4_5a.png",
            caption="../report/figure4_5a.rst",
            category="3. Figures",
        ),
        figure5b=report(
            "results/{dataset}/{summary}/figures/figure5b.png",
            caption="../report/figure5b.rst",
            category="3. Figures",
        ),
    log:
        "results/logs/{dataset}/{summary}/figures.log",
    benchmark:
        "results/benchmarks/{dataset}/{summary}/figures.tsv"
    conda:
        "../envs/oodpose.yaml"
    params:
        cells=lambda wildcards: study_cell_table(wildcards.dataset),
        summary_cells=lambda wildcards: [c.as_dict() for c in summary_cells(wildcards)],
    script:
        "../workflow/scripts/figures.py"


rule individuals:
    input:
        cache=rules.prepare.output[0],
    output:
        table="results/{dataset}/{summary}/individuals.csv",
        figure2=report(
            "results/{dataset}/{summary}/figures/figure2.png",
            caption="../report/figure2.rst",
            category="3. Figures",
        ),
    log:
        "results/logs/{dataset}/{summary}/individuals.log",
    benchmark:
        "results/benchmarks/{dataset}/{summary}/individuals.tsv"
    conda:
        "../envs/oodpose.yaml"
    script:
        "../workflow/scripts/individuals.py"

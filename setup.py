"""Packaging for kfadapter: the service, its CLI and the embedded KFP server."""

from setuptools import find_packages, setup

setup(
    name="kfadapter",
    version="0.1.0",
    description="REST adapter between the O-RAN AI/ML training manager and Kubeflow Pipelines",
    packages=find_packages(include=["kfadapter", "kfadapter.*"]),
    include_package_data=True,
    package_data={
        "kfadapter": ["samples/*.yaml", "static/*", "openapi/*"],
        # the web UI's committed bundle (built from ui/ by `npm run build`)
        "kfadapter.localkfp": ["ui/*.html", "ui/*.md", "ui/assets/*"],
    },
    python_requires=">=3.11",
    install_requires=[
        "kfp==2.17.0",
        "kfp-server-api==2.17.0",
        "Flask>=3.0",
        "Werkzeug>=3.0",
        "gunicorn>=22",
        "requests>=2.31",
        "PyYAML>=6",
        "prometheus-client>=0.20",
        "swagger-ui-bundle>=1.1",
        "psycopg[binary]>=3.2",
        "psycopg-pool>=3.2",
    ],
    extras_require={
        "test": ["pytest", "requests-mock", "ruff", "jsonschema", "openapi-spec-validator"]
    },
    entry_points={"console_scripts": ["kfadapter=kfadapter.cli:main"]},
)

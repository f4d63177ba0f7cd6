"""The stack's services, in start order: one `services/<name>/service.py` each."""

from __future__ import annotations

from pipeline.settings import Settings
from services.airflow import service as airflow
from services.connect import service as connect
from services.console import service as console
from services.contract import Service
from services.kafka import service as kafka
from services.kinesis import service as kinesis
from services.localstack import service as localstack
from services.mysql import service as mysql
from services.rest_proxy import service as rest_proxy
from services.s3 import service as s3
from services.spark import service as spark
from services.stream import service as stream


def all_services(settings: Settings) -> list[Service]:
    return [
        mysql.service(settings),
        s3.service(settings),
        kinesis.service(settings),
        localstack.service(settings),
        kafka.service(settings),
        rest_proxy.service(settings),
        connect.service(settings),
        *airflow.services(settings),
        *spark.services(settings),
        console.service(settings),
        stream.service(settings),
    ]

# ruff: noqa: B018
"""Names vulture (``make lint``) cannot see used, each group with who uses it.

vulture scans layers/optout/optout, functions and tools: what runs in Lambda, the local stack and
the CLI. It does not scan tests: a name only tests use is dead in production, so it is deleted,
or named below as a test seam (a fake, an observable a test reads, an entry point run by hand).
Scanning tests too would count every test's use as a use and hide exactly that.

The Makefile's lint target skips, by pattern, what frameworks find by decorator or by name:
Powertools routes and error handlers (@app.*), click commands and groups (@*.command,
@*.group), pydantic validators (@field_validator, @model_validator), the Lambda entry points
(lambda_handler), the provisioner's _aws_<type> methods (looked up by the resource's type),
http.server's do_<METHOD> hooks, boto3's TypeDeserializer _deserialize_<type> hooks and pydantic's
model_config.

vulture matches bare names, not owners: ``_.nature`` counts every attribute named nature as
used. Each line is an expression vulture reads as a use (hence B018 off here); nothing runs it.
"""

from vulture.whitelists.whitelist_utils import Whitelist

_ = Whitelist()

# Pydantic fields: filled by validating the API's JSON, read as keys of the dumped model
# (notices/render.py, notices/public.py, notices/dispatch.py, the CLI's reports and templates).
# The notice kinds' variables (notices/model.py) and the public notice (notices/public.py):
_.policy_version
_.effective_date
_.policy_url
_.new_controller
_.choices_url
_.nature
_.data_categories
_.likely_consequences
_.measures_taken
_.subjects_concerned
_.records_concerned
_.measures_proposed
_.publish_if_unreachable
_.sms_text
# Notice and DeliveryRecord (notices/model.py), stored and listed by the admin API:
_.created_by
_.bad_row_samples
_.provider_message_id
# compliance.OptOut, in the compliance report's JSON that tools/optout_local/compliance_report.py reads:
_.lifted_at

# Read by Jinja in tools/optout_local/report_templates/visual.html (notice_reports.Deliveries, Chart)
_.unreachable_total
_.plot_width
_.plot_height
_.x_label
_.start_label
_.deadline_x
_.deadline_label
_.target_y
_.target_label
_.last_label

# suppression.store.OnceMarker: stored in the marker item as an operator's evidence that a reply's
# answer was lost; no code decides on it
_.reply_outcome

# Lambda's context object (lambda_bootstrap.LambdaContext, runtime.LambdaContext): the interface
# handlers and Powertools' inject_lambda_context read
_.invoked_function_arn
_.function_version
_.memory_limit_in_mb
_.log_group_name
_.log_stream_name
_.client_context

# Read by http.server and socketserver (faults.py, gateway.py, ses_emulation.py)
_.protocol_version
_.server_version
_.disable_nagle_algorithm
_.daemon_threads
_.request_queue_size
_.allow_reuse_address
_.log_message
# Werkzeug's WSGIRequestHandler hooks (moto_process.py)
_.log_request
_.run_wsgi
# botocore's credential_provider component calls it (iam/in_process.py _Resolver)
_.load_credentials
# The interpreter reads it (lambda_bootstrap.py: Lambda's disk is read-only)
_.dont_write_bytecode
# A handler bench.py names by string ("handler.with_clients", bench_functions/bare/handler.py)
_.with_clients
# Stub parameters named as boto3 passes them (bench_dispatch.ManifestStub.get_object)
_.Bucket
_.Key

# logging.Formatter reads its converter (lambda_bootstrap._setup_logging: times in UTC, as Lambda's)
_.converter

# Test seams: fakes, observables tests read, entry points run by hand
_.MemorySuppressionStore  # suppression/store.py: tests/unit/test_feedback.py runs Feedback over it
_.NoResources  # iam/requests.py: a lookup that knows nothing, for tests/unit/test_iam_requests.py
_.run_as  # iam/in_process.py: domain code an integration test drives, as a function's role
_.get_settings  # core/settings.py: integration tests beside a stack read its tables and secrets
_.all_deliveries  # notices/store.py: integration tests read every delivery record of a notice
_.environments  # lambda_runtime.FunctionPool: tests/integration/test_lambda_runtime.py counts them
_.output  # provision.Stack: tests/integration/test_local_stack.py reads the template's Outputs
_.redelivered  # notices/send.BatchResult: tests/integration/test_send_progress.py checks it
_.shared_quota_run  # bench.py: run by hand (README's benchmark table) and by tests/bench

# Dead, in files being changed by others now

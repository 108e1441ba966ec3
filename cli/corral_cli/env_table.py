"""The one table of environment variables corral honours, with the defaults it really uses.

``corral serve --help`` lists all of it and each other command the few it reads; the descriptions of
the ``OLLAMA_*`` variables are Ollama's (envconfig ``AsMap``) with corral's real defaults.
cli/tests/test_help.py fails when a variable read anywhere in the tree is missing here.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class EnvVar:
    """A variable and the one line of help that documents it (default included)."""

    name: str
    description: str


OLLAMA_VARS = (
    EnvVar("OLLAMA_DEBUG", "Show additional debug information (e.g. OLLAMA_DEBUG=1)"),
    EnvVar("OLLAMA_HOST", "IP Address for the corral server (default 127.0.0.1:11434)"),
    EnvVar("OLLAMA_CONTEXT_LENGTH", "Context length to use unless otherwise specified (default: 4096)"),
    EnvVar("OLLAMA_KEEP_ALIVE", 'The duration that models stay loaded in memory (default "5m")'),
    EnvVar("OLLAMA_MAX_LOADED_MODELS", "Maximum number of loaded models (default 3)"),
    EnvVar("OLLAMA_MAX_QUEUE", "Maximum number of queued requests (default 512)"),
    EnvVar("OLLAMA_MODELS", "The path to the models directory (default $CORRAL_HOME/models)"),
    EnvVar("OLLAMA_NUM_PARALLEL", "Maximum number of parallel requests (default 4)"),
    EnvVar("OLLAMA_KV_CACHE_TYPE", "Quantization type for the K/V cache: f16, q8_0 or q4_0 (default: f16)"),
    EnvVar("OLLAMA_FLASH_ATTENTION", "Enabled flash attention (default: llama.cpp decides; on for a quantized "
                                     "K/V cache, which needs it)"),
    EnvVar("OLLAMA_NOPRUNE", "Do not prune the blobs a pull replaced"),
    EnvVar("OLLAMA_ORIGINS", "A comma separated list of allowed origins (added to the local ones)"),
    EnvVar("OLLAMA_NOHISTORY", "Do not preserve readline history"),
    EnvVar("OLLAMA_API_KEY", "Sent to the server as 'Authorization: Bearer <key>' when set"),
)

RUNTIME_VARS = (
    EnvVar("CORRAL_HOME", "Keys, job spool and databases (default ~/.corral)"),
    EnvVar("CORRAL_NUM_THREAD", "CPU threads per model (default 0: every core the process may use)"),
    EnvVar("CORRAL_KV_LAZY", "A loaded model's KV cache takes RAM as it is written, not all at load (CPU builds, "
                             "Linux; default true)"),
    EnvVar("CORRAL_LAZY_SERVICES", "Start auth and websearch on their first connection, the job worker when a job "
                                   "is queued (default true)"),
    EnvVar("CORRAL_WORKER_IDLE_EXIT", "Seconds without a job after which a job worker started on demand ends "
                                      "(default 30)"),
    EnvVar("CORRAL_FORK_SERVICES", "Fork the services from serve, which imported what they share once, so they "
                                   "share that memory (default true)"),
    EnvVar("CORRAL_LOG_FORMAT", "Log lines as json or console (default console on a terminal, else json)"),
    EnvVar("CORRAL_METRICS", "Collect Prometheus metrics (default true)"),
    EnvVar("CORRAL_READYZ_SKIP", "Comma separated services the gateway's /readyz leaves out (default none)"),
    EnvVar("CORRAL_IMPORT_BUNDLED", "Import the models that ship in installed packages at startup"),
    EnvVar("CORRAL_SHUTDOWN_GRACE", "Seconds running requests may finish after SIGTERM; streams still open then "
                                    "end with an error line (default 10)"),
    EnvVar("CORRAL_MEMORY_LIMIT", "Memory ceiling of each service process (RLIMIT_DATA), e.g. 8GiB; 0 for none "
                                  "(default 3/4 of the machine for inference and jobs, 1/4 for the others)"),
    EnvVar("CORRAL_MAX_BODY", "Largest JSON request body, e.g. 8MiB (default 4MiB; generate, chat, embed and /v1 "
                              "take 16 times that, for images; blob uploads have no cap)"),
    EnvVar("CORRAL_BROKER_URL", "Celery broker, e.g. redis://... (default files under $CORRAL_HOME/celery)"),
    EnvVar("CORRAL_RESULT_BACKEND", "Celery result store (default SQLite under $CORRAL_HOME/celery)"),
    EnvVar("CORRAL_JOB_LEASE_SECONDS", "A job whose worker stays silent this long (killed) is queued again "
                                        "(default 30)"),
    EnvVar("CORRAL_JOB_REDELIVERIES", "Times a job is queued again after its worker died; then the caller gets "
                                      "an error (default 3)"),
    EnvVar("CORRAL_DATABASE_URL", "Database of the auth, registry and websearch services (default SQLite "
                                  "under $CORRAL_HOME)"),
    EnvVar("CORRAL_INFERENCE_URL", "Where the gateway finds inference (serve sets it; default "
                                   "http://127.0.0.1:11435); several nodes comma separated, and a name "
                                   "resolving to several addresses counts each"),
    EnvVar("CORRAL_REGISTRY_URL", "Where the gateway finds the model store (serve sets it; default "
                                  "http://127.0.0.1:11436)"),
    EnvVar("CORRAL_AUTH_URL", "Where the gateway finds auth (serve sets it; default http://127.0.0.1:11437)"),
    EnvVar("CORRAL_WEBSEARCH_URL", "Where the gateway finds websearch (serve sets it; default "
                                   "http://127.0.0.1:11438)"),
)

AUTH_VARS = (
    EnvVar("CORRAL_AUTH_REQUIRED", "API keys: unset = for remote clients, 1 = for every client, 0 = never"),
    EnvVar("CORRAL_TRUSTED_PROXIES", "Comma separated proxies/CIDRs whose X-Forwarded-For names the client"),
    EnvVar("CORRAL_REDIS_URL", "Redis for shared rate limits and nonces (default in process, or a redis "
                               "CORRAL_BROKER_URL)"),
    EnvVar("CORRAL_AUTH_PEPPER", "Key hashing secret shared by auth replicas (default generated under "
                                 "$CORRAL_HOME)"),
    EnvVar("CORRAL_AUTH_SIGNING_KEY_FILE", "Token signing key shared by auth replicas (default generated under "
                                           "$CORRAL_HOME)"),
    EnvVar("CORRAL_RATE_LIMIT_RPS", "Requests per second per API key (default 20)"),
    EnvVar("CORRAL_RATE_LIMIT_BURST", "Burst per API key (default 200)"),
    EnvVar("CORRAL_AUTH_LOCKOUT_FAILURES", "Failed attempts before a lockout (default 20)"),
    EnvVar("CORRAL_AUTH_LOCKOUT_SECONDS", "Length of a lockout in seconds (default 900)"),
    EnvVar("CORRAL_QUOTA_TOKENS_PER_HOUR", "Each user's tokens in and out per hour, unless set for the user "
                                           "(PUT /api/quotas/USER; default no limit)"),
    EnvVar("CORRAL_QUOTA_REQUESTS_PER_MINUTE", "Each user's inference requests per minute, unless set for the user "
                                               "(default no limit)"),
)

REGISTRY_VARS = (
    EnvVar("CORRAL_REGISTRY_HOST", "Address of the /v2 registry (default 127.0.0.1:5000)"),
    EnvVar("CORRAL_REGISTRY_DATA", "Where blobs and manifests are stored (default $CORRAL_HOME/registry)"),
    EnvVar("CORRAL_REGISTRY_STORAGE", "Storage driver: filesystem, s3 or inmemory (default filesystem; s3 "
                                      "with CORRAL_S3_BUCKET)"),
    EnvVar("CORRAL_S3_BUCKET", "Store in this S3 bucket instead (with CORRAL_S3_ENDPOINT_URL, AWS_*)"),
    EnvVar("CORRAL_S3_PREFIX", "Key prefix inside the S3 bucket (default none)"),
    EnvVar("CORRAL_S3_ENDPOINT_URL", "S3 endpoint, for S3-compatible servers (default AWS)"),
    EnvVar("CORRAL_REGISTRY_REDIRECT", "Redirect blob reads to presigned URLs when the storage can (default "
                                       "true)"),
    EnvVar("CORRAL_REGISTRY_SERVE_V2", "The registry service also serves the /v2 protocol (default false)"),
    EnvVar("CORRAL_REGISTRY_LAYOUT_HOST", 'Host part of the names the /v2 registry stores (default '
                                          '"registry.ollama.ai")'),
    EnvVar("CORRAL_EMBEDDED_REGISTRY", "serve also runs a /v2 registry of the local store on "
                                       "CORRAL_REGISTRY_HOST"),
    EnvVar("CORRAL_EMBEDDED_REGISTRY_AUTH", "The embedded registry asks this corral's auth for tokens"),
    EnvVar("CORRAL_REGISTRY_INLINE_WORKER", "Run the registry's job worker as a thread, not a process"),
    EnvVar("CORRAL_REGISTRY_AUTH_REALM", "Token endpoint of the auth service; setting it turns token auth on"),
    EnvVar("CORRAL_REGISTRY_AUTH_JWKS_URL", "Where the verification keys are (default jwks.json beside the "
                                            "realm)"),
    EnvVar("CORRAL_REGISTRY_AUTH_ISSUER", 'Expected token issuer (default "corral")'),
    EnvVar("CORRAL_REGISTRY_AUTH_SERVICE", 'Expected token audience (default "corral-registry")'),
    EnvVar("CORRAL_REGISTRY_AUTH_CHALLENGE_REALM", "Realm named in 401s (default the registry's own /token)"),
    EnvVar("CORRAL_GC_GRACE_SECONDS", "Keep unreferenced blobs younger than this (default 3600)"),
    EnvVar("CORRAL_GC_INTERVAL_SECONDS", "Seconds between scheduled garbage collections (default 0: never)"),
)

TRANSFER_VARS = (
    EnvVar("CORRAL_REGISTRY_ALLOW", "Comma separated private hosts that pulls and pushes may reach"),
    EnvVar("CORRAL_REGISTRY_ALLOW_LOOPBACK", "Pulls and pushes may reach loopback hosts (default true)"),
    EnvVar("CORRAL_REGISTRY_API_KEY", "Bearer key sent to a registry that asks for one"),
    EnvVar("CORRAL_TRANSFER_PART_MIN", "Smallest part of a blob transfer in bytes (default 100000000)"),
    EnvVar("CORRAL_TRANSFER_PART_MAX", "Largest part of a blob transfer in bytes (default 1000000000)"),
    EnvVar("CORRAL_TRANSFER_RETRIES", "Retries of a failed part (default 6)"),
    EnvVar("CORRAL_TRANSFER_BACKOFF", "First retry delay in seconds, doubled each time (default 1)"),
    EnvVar("CORRAL_TRANSFER_STALL_SECONDS", "Give up on a part silent this long (default 30)"),
    EnvVar("CORRAL_TRANSFER_STALE_SECONDS", "Older name of CORRAL_JOB_LEASE_SECONDS"),
)

REMOTE_VARS = (
    EnvVar("CORRAL_CLOUD_URL", "The hosted corral that runs cloud models (NAME:cloud, NAME:TAG-cloud); the only "
                               "host serve sends credentials: OLLAMA_API_KEY, else the signin key's signature"),
    EnvVar("CORRAL_REMOTE_HOSTS", "Comma separated other hosts (host or host:port) remote models may run on, "
                                  "sent no credentials"),
    EnvVar("CORRAL_REMOTE_ALLOW_PRIVATE", "Remote model hosts may resolve to loopback or private addresses "
                                          "(default false)"),
)

WEBSEARCH_VARS = (
    EnvVar("CORRAL_SEARCH_PROVIDER", 'web_search provider: index, searxng or brave (default "index")'),
    EnvVar("CORRAL_SEARXNG_URL", "A SearXNG instance; setting it alone selects searxng"),
    EnvVar("CORRAL_BRAVE_API_KEY", "The Brave Search API key"),
    EnvVar("CORRAL_BRAVE_URL", "Brave Search endpoint (default https://api.search.brave.com/res/v1/web/search)"),
    EnvVar("CORRAL_WEBSEARCH_DATABASE_URL", "Search index database (default CORRAL_DATABASE_URL, else SQLite)"),
    EnvVar("CORRAL_WEBSEARCH_CACHE_TTL", "Seconds results and pages stay cached (default 600; 0: off)"),
    EnvVar("CORRAL_WEBSEARCH_INDEX_FETCHED", "Add pages web_fetch reads to the index (default true)"),
    EnvVar("CORRAL_WEBFETCH_ALLOW", "Comma separated internal hosts, IPs or CIDRs web_fetch may reach"),
    EnvVar("CORRAL_WEBFETCH_MAX_BYTES", "Body cap of web_fetch after decompression (default 5242880)"),
    EnvVar("CORRAL_WEBFETCH_TIMEOUT", "Total seconds of one web_fetch (default 30)"),
    EnvVar("CORRAL_WEBFETCH_READ_TIMEOUT", "Seconds to first byte and longest silence (default 10)"),
    EnvVar("CORRAL_WEBFETCH_MAX_REDIRECTS", "Redirects web_fetch follows (default 5)"),
)

ENV_VARS: dict[str, EnvVar] = {var.name: var for var in (*OLLAMA_VARS, *RUNTIME_VARS, *AUTH_VARS, *REGISTRY_VARS,
                                                         *TRANSFER_VARS, *REMOTE_VARS, *WEBSEARCH_VARS)}

SERVE_ENV = tuple(ENV_VARS)
RUN_ENV = ("OLLAMA_HOST", "OLLAMA_API_KEY", "OLLAMA_NOHISTORY")
CLIENT_ENV = ("OLLAMA_HOST", "OLLAMA_API_KEY")
REGISTRY_ENV = ("CORRAL_REGISTRY_HOST", "CORRAL_REGISTRY_DATA", "CORRAL_DATABASE_URL", "CORRAL_REGISTRY_STORAGE",
                "CORRAL_S3_BUCKET", "CORRAL_S3_PREFIX", "CORRAL_S3_ENDPOINT_URL", "CORRAL_REGISTRY_REDIRECT",
                "CORRAL_REGISTRY_AUTH_REALM", "OLLAMA_DEBUG")
PRUNE_ENV = ("OLLAMA_MODELS", "CORRAL_REGISTRY_DATA", "CORRAL_DATABASE_URL", "CORRAL_GC_GRACE_SECONDS")


def env_section(names: tuple[str, ...]) -> str:
    """Ollama's ``Environment Variables:`` block (``appendEnvDocs``); the column widens for long names."""
    if not names:
        return ""
    width = max(27, *(len(name) for name in names))
    return "\nEnvironment Variables:\n" + "".join(
        f"      {name:<{width}}   {ENV_VARS[name].description}\n" for name in names)

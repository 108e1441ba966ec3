"""Help texts of the interactive session and the environment variables each command documents."""

USAGE = """Available Commands:
  /set            Set session variables
  /show           Show model information
  /load <model>   Load a session or model
  /save <model>   Save your current session
  /clear          Clear session context
  /bye            Exit
  /?, /help       Help for a command
  /? shortcuts    Help for keyboard shortcuts

Use \"\"\" to begin a multi-line message.

"""

USAGE_SET = """Available Commands:
  /set parameter ...     Set a parameter
  /set system <string>   Set system message
  /set history           Enable history
  /set nohistory         Disable history
  /set wordwrap          Enable wordwrap
  /set nowordwrap        Disable wordwrap
  /set format json       Enable JSON mode
  /set noformat          Disable formatting
  /set verbose           Show LLM stats
  /set quiet             Disable LLM stats
  /set think             Enable thinking
  /set nothink           Disable thinking

"""

USAGE_SHORTCUTS = """Available keyboard shortcuts:
  Ctrl + a            Move to the beginning of the line (Home)
  Ctrl + e            Move to the end of the line (End)
   Alt + b            Move back (left) one word
   Alt + f            Move forward (right) one word
  Ctrl + k            Delete the sentence after the cursor
  Ctrl + u            Delete the sentence before the cursor
  Ctrl + w            Delete the word before the cursor

  Ctrl + l            Clear the screen
  Ctrl + c            Stop the model from responding
  Ctrl + d            Exit corral (/bye)

"""

USAGE_SHOW = """Available Commands:
  /show info         Show details for this model
  /show license      Show model license
  /show modelfile    Show Modelfile for this model
  /show parameters   Show parameters for this model
  /show system       Show system message
  /show template     Show prompt template

"""

USAGE_PARAMETERS = """Available Parameters:
  /set parameter seed <int>             Random number seed
  /set parameter num_predict <int>      Max number of tokens to predict
  /set parameter top_k <int>            Pick from top k num of tokens
  /set parameter top_p <float>          Pick token based on sum of probabilities
  /set parameter min_p <float>          Pick token based on top token probability * min_p
  /set parameter num_ctx <int>          Set the context size
  /set parameter temperature <float>    Set creativity level
  /set parameter repeat_penalty <float> How strongly to penalize repetitions
  /set parameter repeat_last_n <int>    Set how far back to look for repetitions
  /set parameter num_gpu <int>          The number of layers to send to the GPU
  /set parameter stop <string> <string> ...   Set the stop parameters

"""

ENV_DOCS = {
    "OLLAMA_DEBUG": "Show additional debug information (e.g. OLLAMA_DEBUG=1)",
    "OLLAMA_HOST": "IP Address for the corral server (default 127.0.0.1:11434)",
    "OLLAMA_CONTEXT_LENGTH": "Context length to use unless otherwise specified (default: 4k/32k/256k based on VRAM)",
    "OLLAMA_KEEP_ALIVE": 'The duration that models stay loaded in memory (default "5m")',
    "OLLAMA_MAX_LOADED_MODELS": "Maximum number of loaded models per GPU",
    "OLLAMA_MODELS": "The path to the models directory",
    "OLLAMA_NUM_PARALLEL": "Maximum number of parallel requests",
    "OLLAMA_ORIGINS": "A comma separated list of allowed origins",
    "OLLAMA_NOHISTORY": "Do not preserve readline history",
    "OLLAMA_API_KEY": "Sent to the server as 'Authorization: Bearer <key>' when set",
}
SERVE_ENV = ("OLLAMA_DEBUG", "OLLAMA_HOST", "OLLAMA_CONTEXT_LENGTH", "OLLAMA_KEEP_ALIVE",
             "OLLAMA_MAX_LOADED_MODELS", "OLLAMA_MODELS", "OLLAMA_NUM_PARALLEL", "OLLAMA_ORIGINS")
RUN_ENV = ("OLLAMA_HOST", "OLLAMA_API_KEY", "OLLAMA_NOHISTORY")
CLIENT_ENV = ("OLLAMA_HOST", "OLLAMA_API_KEY")


def env_epilog(names: tuple[str, ...]) -> str:
    """An ``Environment Variables:`` section as Ollama appends to a command's help."""
    if not names:
        return ""
    return "Environment Variables:\n" + "".join(f"      {name:<27}   {ENV_DOCS[name]}\n" for name in names)

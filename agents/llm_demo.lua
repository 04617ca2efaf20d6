-- llm_demo: planner -> llm -> planner -> sink. The planner asks the llm
-- its prompts one at a time; the llm streams each answer back token by
-- token; the planner hands each whole answer to the sink, which prints it.
--
-- Point config.url at any OpenAI-compatible server: llama.cpp's
-- (`llama-server -m model.gguf --port 8080`), Ollama's
-- (http://127.0.0.1:11434/v1/chat/completions, model = "llama3.2"), or a
-- hosted API with api_key_env = "OPENAI_API_KEY" (the variable's NAME).
return {
  name = "llm_demo",
  tick = "1ms",
  neurons = {
    planner = { script = "planner.lua", threshold = 0, refractory = 0,
                config = { llm = "llm", sink = "sink",
                           prompts = { "Say hello in five words.",
                                       "Name three colours." } } },
    llm = { script = "llm.lua", threshold = 0, refractory = 0,
            config = { url = "http://127.0.0.1:8080/v1/chat/completions",
                       model = "local", api_key_env = "LLM_API_KEY",
                       timeout = "120s" } },
    sink = { script = "sink.lua", threshold = 0, refractory = 0 },
  },
  synapses = {
    { from = "planner", to = "llm" },
    { from = "planner", to = "sink" },
  },
}

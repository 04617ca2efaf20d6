#include "nb_err.h"

const char *nb_strerror(int err) {
  switch (err) {
  case NB_OK: return "ok";
#define NB__ERR_TEXT(name, code, text) case (code): return (text);
  NB_ERR_MAP(NB__ERR_TEXT)
#undef NB__ERR_TEXT
  default: return "unknown error";
  }
}

const char *nb_err_name(int err) {
  switch (err) {
  case NB_OK: return "NB_OK";
#define NB__ERR_NAME(name, code, text) case (code): return "NB_E" #name;
  NB_ERR_MAP(NB__ERR_NAME)
#undef NB__ERR_NAME
  default: return "NB_UNKNOWN";
  }
}

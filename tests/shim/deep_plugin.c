/* Found only along deep_loader's RUNPATH. */
int plugin_answer(void) { return 42; }

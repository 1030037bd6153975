#% The three case-table functions, shared word for word by carsctl.bash and carsctl.zsh (their
#% `# @TABLES@` line), so written in the common subset of bash and zsh. The `# @..._CASES@` slots are
#% filled in from the command tree. Shellcheck reads it as bash.
_carsctl_cmd() {
    _cc_subs=() _cc_opts=()
    case $1 in
        # @CMD_CASES@
    esac
}

# _carsctl_optval PATH OPTION: status 0 and the value spec in _cc_val (kind, words...) and the number
# of values in _cc_nargs when the option takes a value; status 1 for a flag or an unknown option.
_carsctl_optval() {
    case "$1|$2" in
        # @OPT_CASES@
        *) return 1 ;;
    esac
}

# _carsctl_argval PATH N: status 0 and the value spec in _cc_val when the command takes an N-th
# positional argument.
_carsctl_argval() {
    case "$1|$2" in
        # @ARG_CASES@
        *) return 1 ;;
    esac
}

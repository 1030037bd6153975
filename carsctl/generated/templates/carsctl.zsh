#% Template of the zsh completion script: a `#compdef` function for $fpath, or a file to source after
#% compinit. carsctl/generated/completion_scripts.py fills it in; `carsctl completion generate` writes it
#% to completions/_carsctl. Shellcheck reads no zsh: `zsh -n` checks the output in the tests.
#% A line `# @NAME@` is a slot, replaced by its text: HEADER (header.txt), TABLES (tables.sh) and
#% CMD_CASES, OPT_CASES, ARG_CASES (the command tree as case tables). `#%` lines, like these, are dropped.
#compdef carsctl
# @HEADER@

# _carsctl_cmd PATH: the subcommands and options (name:description) of a command path.
# @TABLES@

# The state directory: $CARSCTL_HOME, else a CARSCTL_HOME= line of ./.env, else ./.carsctl.
_carsctl_home() {
    setopt localoptions extendedglob
    _cc_home=${CARSCTL_HOME-}
    if [[ -z $_cc_home && -f .env && -r .env ]]; then
        local line
        while IFS= read -r line || [[ -n $line ]]; do
            line=${line##[[:space:]]#}
            line=${line#export }
            if [[ $line == CARSCTL_HOME[[:space:]]#=* ]]; then
                line=${${line#*=}##[[:space:]]#}
                line=${line%%[[:space:]]#}
                case $line in
                    \"*\"|\'*\') line=${line[2,-2]} ;;
                    *) line=${line%%[[:space:]]\#*} ;;
                esac
                _cc_home=$line
            fi
        done < .env
    fi
    _cc_home=${_cc_home:-.carsctl}
    [[ $_cc_home == "~/"* ]] && _cc_home=$HOME/${_cc_home#"~/"}
}

# Task aliases and names from the cache; when it is missing, `carsctl completion refresh --quiet`
# writes it (once per shell and state directory; it imports no Celery and touches no network).
_carsctl_tasks() {
    local file=$_cc_home/completion/tasks line
    if [[ ! -f $file && ${_carsctl_refreshed-} != $_cc_home ]]; then
        typeset -g _carsctl_refreshed=$_cc_home
        if (( $+commands[carsctl] )); then
            CARSCTL_HOME=$_cc_home command carsctl completion refresh --quiet </dev/null >/dev/null 2>&1
        fi
    fi
    [[ -f $file && -r $file ]] || return 0
    while IFS= read -r line || [[ -n $line ]]; do
        [[ -n $line ]] && _cc_dyn+=("$line")
    done < $file
}

# Worker node names: the names of $CARSCTL_HOME/nodes/<name>.json whose "kind" is worker (the default);
# beat and the monitor have state files there too.
_carsctl_nodes() {
    local file line kind
    for file in $_cc_home/nodes/*.json(N); do
        [[ -f $file && -r $file ]] || continue
        kind=worker
        while IFS= read -r line; do
            if [[ $line == *'"kind"'* ]]; then
                line=${line#*'"kind"'}
                line=${line#*'"'}
                kind=${line%%'"'*}
                break
            fi
        done < $file
        [[ $kind == worker ]] && _cc_dyn+=("${${file:t}%.json}")
    done
    return 0
}

# _carsctl_values: add the candidates of the value spec in _cc_val.
_carsctl_values() {
    local -a _cc_dyn cands
    case $_cc_val[1] in
        f) _files; return ;;
        d) _files -/; return ;;
        t) _carsctl_home; _carsctl_tasks ;;
        n) _carsctl_home; _carsctl_nodes ;;
        -) _message -e values 'value'; return ;;
    esac
    cands=(${_cc_val[2,-1]} $_cc_dyn)
    compadd -a cands
}

_carsctl() {
    # no `emulate -L zsh`: _describe and _files need the options _main_complete sets (extendedglob...)
    local cur=${(Q)words[CURRENT]} cmdpath= word
    integer i n=0 skip=0 ddash=0 _cc_nargs=0
    local -a _cc_subs _cc_opts _cc_val names
    local _cc_home
    _carsctl_cmd ''
    for (( i = 2; i < CURRENT; i++ )); do
        word=${(Q)words[i]}
        if (( skip > 0 )); then
            (( skip-- ))
            continue
        fi
        if (( ddash )); then
            (( n++ ))
            continue
        fi
        case $word in
            --) ddash=1 ;;
            -*=*) ;;
            -?*) _carsctl_optval "$cmdpath" "$word" && skip=$_cc_nargs ;;
            *)
                names=(${_cc_subs%%:*})
                if (( ${names[(Ie)$word]} )); then
                    cmdpath=${cmdpath:+$cmdpath }$word
                    _carsctl_cmd "$cmdpath"
                    n=0
                else
                    (( n++ ))
                fi
                ;;
        esac
    done
    if (( skip > 0 )); then
        _carsctl_values
    elif [[ $cur == -* ]] && (( ! ddash )); then
        if [[ $cur == --*=* ]] && _carsctl_optval "$cmdpath" "${cur%%=*}"; then
            compset -P '*='
            _carsctl_values
        else
            _describe -t options 'carsctl option' _cc_opts
        fi
    elif (( $#_cc_subs )); then
        _describe -t commands 'carsctl command' _cc_subs
    elif _carsctl_argval "$cmdpath" $(( n + 1 )); then
        _carsctl_values
    elif (( ! ddash )); then
        _describe -t options 'carsctl option' _cc_opts
    fi
}

if [[ ${zsh_eval_context[-1]-} == loadautofunc ]]; then
    # autoloaded from $fpath by compinit: complete now
    _carsctl "$@"
elif (( $+functions[compdef] )); then
    # sourced after compinit
    compdef _carsctl carsctl
else
    print -u2 "carsctl completion: run 'autoload -Uz compinit && compinit' before sourcing this file"
fi
